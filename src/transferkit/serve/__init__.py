"""Web apps over a fitted model: the prediction server (`transferkit serve`) and the labelling page."""
