"""What is said: text for people and machines, through the Jinja templates in
`templates/` (one per outcome): apply and validation reports, the merged PR's comment (and a
waiting request's, edited in place), lease notices, idle-GPU notices and the notice that a
request which waited is made, the answers to comment commands, and the escaping every channel
needs. Pure: data in, strings out.

May import: planning, validation, values. Reaches GitHub only through a client it is handed.
"""
