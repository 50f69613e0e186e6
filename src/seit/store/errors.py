from seit.errors import SeitError


class StoreError(SeitError):
    """A token store (or token file) that is missing, corrupt or inconsistent; names the file."""
