"""Receiving training images: multipart requests streamed to disk (receive), archives unpacked
as they arrive (archives, zipstream, tarstream, unpacking), each file proved an image
(imagecheck), labels checked (labels), and what was kept recorded for a model (uploads)."""
