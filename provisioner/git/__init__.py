"""The git adapter: a revision's files as a Tree, merge bases, test merges and commit
authors, through the git command.

May import: values only. Never another adapter.
"""
