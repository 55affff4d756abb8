"""HTTP handlers: thin — parse the request, call one function, answer."""
