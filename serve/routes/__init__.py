"""The service's routes, one router per concern; `serve.app.create_app` includes them."""
