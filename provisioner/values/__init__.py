"""Values: the data every wing hands the others, at the bottom of the house.

Pydantic models of request files and the policy, a loaded request, problems, observed LXD
state and what the host already gave to whom (held names and logins), a pull request's
changes, the plan as data, the waitlist's place in line, specs, outcomes, ID ranges, sizes and
paths. Imports nothing from
provisioner but other values; everything else may import these.
"""
