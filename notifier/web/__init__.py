"""The HTTP and websocket server: a Starlette app built by ``create_app``."""
