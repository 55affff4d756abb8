"""The user API's handlers: each parses its request, calls the capability that does the work
(in a thread when it blocks) and answers. The worker routes' (worker.py) also stream tars of
folders and images in and out, which is most of their length."""
