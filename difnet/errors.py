"""Errors a user can cause (paths, keys, shapes, flags); entry scripts print them as one line and exit."""


class DifnetError(Exception):
    """A problem with the user's inputs: the message names the file/key/flag and the fix."""


DATA_FIX = "run 'make difnet-data' (or 'make difnet-toy' for the toy set) or pass the right path"
