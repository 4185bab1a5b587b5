"""The notify adapter: e-mail through the lab's SMTP server (STARTTLS) and chat webhooks
(WeCom, Feishu, DingTalk, Slack), each try bounded by a timeout, retried with backoff, and
the secrets they need (the SMTP login, webhook URLs, members' addresses) read from private
files on the host. Nothing here raises for a failed delivery: it becomes a `Delivery`.

May import: values only (like every adapter).
"""
