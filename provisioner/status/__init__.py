"""What is seen: the server's status (who holds which GPU until when, who waits in line for
one), the state snapshot
published for the PR check, the status page, the plan preview on a pull request, and GPU-hours
per member, idle GPUs and what is due for them (a final notice, a release) from the sampler's
readings. Pure.

May import: reporting, planning, validation, values.
"""
