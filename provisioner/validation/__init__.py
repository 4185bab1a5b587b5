"""What is read and judged: untrusted YAML loaded with positions, the schema pass, the
lab's rules and their catalogue, who may change what in a pull request, and who may give a
container which comment command how often (`commands`). Pure.

May import: values. Never an adapter, a report or anything that acts.
"""
