"""`seit demo`: the whole method end to end on a built-in dataset (``seit.demo.dataset``)."""
