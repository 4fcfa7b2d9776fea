"""The core every experiment uses: models, hooks, chat, generation, capture, methods, extraction,
projection, artifacts and io. It never imports the workflow seam or an experiment."""
