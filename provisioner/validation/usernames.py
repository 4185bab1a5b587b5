"""Which Linux user names a member may hold on a shared server. Pure.

An account request's `name` becomes a login on a server everyone shares, so it must be
plainly the member's own: their login, or `<login>-<suffix>`. A name is in the namespace of
the LONGEST member or admin login it starts with (`alice-x-nb` is alice-x's when both alice
and alice-x are members), so one member can never take another's login or their names.
On top of that, names that system packages create or that carry host-level rights are
refused, whoever asks: the lists below cover a Debian/Ubuntu base, desktop and server
packages, container and GPU stacks. The shared server itself is asked at apply time too
(`apply` refuses to take over a user or group it did not create), so a package installed
there later is covered even when it is missing here.

"""

from __future__ import annotations

from collections.abc import Iterable

# Users and groups of Debian's base-passwd, and names an admin would read as the host's own.
_BASE = """
root daemon bin sys sync games man lp mail news uucp proxy www-data backup list irc gnats
nobody nogroup _apt adm tty disk kmem dialout fax voice cdrom floppy tape sudo audio dip src
shadow utmp video sasl plugdev staff users operator input sgx kvm render netdev crontab
ssl-cert lpadmin sambashare admin administrator ubuntu debian guest user users wheel
"""
# Service users and groups that Debian/Ubuntu packages create (adduser --system).
_SERVICES = """
messagebus sshd syslog uuidd tcpdump tss landscape pollinate polkitd usbmux rtkit avahi
avahi-autoipd colord cups-pk-helper cups-browsed dnsmasq geoclue gdm lightdm sddm pulse
pulse-access saned speech-dispatcher whoopsie kernoops hplip fwupd-refresh nm-openvpn
nm-openconnect xrdp ntp ntpsec chrony statd rpc rpcuser postfix postdrop dovecot dovenull
exim bind named ftp nginx apache apache2 httpd www http lighttpd haproxy squid tomcat
jenkins git gitlab gitlab-runner gitea postgres mysql mariadb redis mongodb memcache
memcached rabbitmq elasticsearch opensearch kibana grafana prometheus influxdb zabbix nagios
munin snmp clamav opendkim spamd amavis sssd openldap ldap slapd sasl radius freerad
couchdb cassandra zookeeper kafka hadoop hdfs yarn spark ceph hacluster libvirt
libvirt-qemu libvirt-dnsmasq qemu kvm lxd lxc incus incus-admin docker dockremap
containerd podman singularity apptainer slurm munge nvidia nvidia-persistenced
nvidia-fabricmanager nvidia-dcgm dcgm cuda epmd avahi saslauth smmsp mailman uml-net
systemd-network systemd-resolve systemd-timesync systemd-journal systemd-coredump
systemd-oom polkituser flatpak _flatpak pipewire geoclue2 ollama jupyter jupyterhub
"""
# What this lab's own machinery runs as.
_LAB = "ssp runner actions-runner github-runner github"

SYSTEM_USERS = frozenset((_BASE + _SERVICES + _LAB).split())
# Families of generated service names: systemd's units, NVIDIA's daemons, libvirt's helpers.
SYSTEM_PREFIXES = ("systemd-", "nvidia-", "libvirt-")


def system_user(name: str) -> bool:
    """A name a system package or service uses (or would read as one)."""
    return name in SYSTEM_USERS or name.startswith(SYSTEM_PREFIXES)


def namespace_owner(name: str, logins: Iterable[str]) -> str | None:
    """The login whose namespace `name` is in: the longest L with name == L or L-…."""
    best: str | None = None
    for login in logins:
        user = login.lower()
        if (name == user or name.startswith(user + "-")) and (
            best is None or len(user) > len(best)
        ):
            best = user
    return best
