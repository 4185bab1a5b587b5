"""What is said: text for people and machines, through the Jinja templates in
`templates/` (one per outcome): apply and validation reports, the merged PR's comment, lease
notices and idle-GPU notices, the answers to comment commands, and the escaping every channel
needs. Pure: data in, strings out.

May import: planning, validation, values. Reaches GitHub only through a client it is handed.
"""
