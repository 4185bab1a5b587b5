"""What is done: walking a Plan through the adapters (apply), accounts on a shared server,
work inside an instance, members' images, the host's project, warm clones (made ahead by
maintenance, claimed by new containers), and LXD's failures said in the request's terms.

May import: the adapters (lxd, github, git, gpu, host), doctor, status, reporting, planning,
validation, values.
"""
