"""The GitHub adapter: pull requests, comments, issues, reactions on a member's command and
the state branch through PyGithub, with GitHub's failures sorted into retryable and final.

May import: values only. Never another adapter.
"""
