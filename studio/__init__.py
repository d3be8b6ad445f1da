"""TDRI Studio: the PySide6 application (annotation view, refinement dialogue, engine thread).

Map: ``app`` (entry point), ``main_window`` (projects, views, message bar), ``annotation_*``
and ``refinement_*`` (a Qt-side model with observable properties + its view), ``engine_bridge``
and ``jobs`` (the one engine thread and its job queue), ``settings_dialog``, ``prefs`` (the
studio's own preferences), ``tags`` (tag vocabularies), ``shortcuts`` (every key, one table).
The studio talks to ``tdri_engine`` only through its public API and events.
"""
