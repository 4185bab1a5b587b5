"""What is read and judged: untrusted YAML loaded with positions, the schema pass, the
lab's rules and their catalogue, and who may change what in a pull request. Pure.

May import: values. Never an adapter, a report or anything that acts.
"""
