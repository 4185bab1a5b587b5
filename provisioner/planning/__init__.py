"""What is planned: desired state (valid requests) against observed LXD state, to a Plan of
actions: allocation of GPUs, ports and ID ranges, placement on cluster members, leases, members'
images, the host's project and the tunnel's configuration. Pure: data in, data out.

May import: validation, values.
"""
