"""Training methods that plug into :func:`noisyclean.train.loop.run_epochs`."""
