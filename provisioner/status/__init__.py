"""What is seen: the server's status (who holds which GPU until when), the state snapshot
published for the PR check, the status page, and the plan preview on a pull request. Pure.

May import: reporting, planning, validation, values.
"""
