"""Redis streams: key names, connection and embedded server, publishing, consumer groups, trimming."""
