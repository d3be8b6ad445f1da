"""Qt-side state the views bind to: observable properties over the project store, no widgets."""
