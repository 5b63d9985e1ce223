"""Process roles: the command line, `up` and its supervisor, the embedded servers."""
