"""The widgets: the main window, the two views, their panels and the dialogs."""
