"""What is planned: desired state (valid requests) against observed LXD state, to a Plan of
actions: allocation of GPUs (a count's stay with its container; requests whose GPUs are taken
wait in line by merge order), ports and ID ranges, placement on cluster members, accounts on
shared servers, leases, members' images, the host's project, the warm pool of clones made
ahead (which to keep, make or claim) and the tunnel's configuration. Pure: data in, data out.

May import: validation, values.
"""
