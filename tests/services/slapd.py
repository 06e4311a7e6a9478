"""A private, throw-away OpenLDAP slapd on 127.0.0.1 with the ppolicy overlay.

The directory has ``ou=people`` (accounts), ``ou=groups`` and a default password policy that
hashes cleartext passwords and honours ``pwdAccountLockedTime``, as a production directory
managed by lockstep would. It records each entry's last successful bind (``olcLastBind``:
``pwdLastSuccess``) and runs syncprov, which keeps the suffix's ``contextCSN``. The admin is
the database's rootDN, so ACLs and size limits never get in the way of the fixtures; the ACLs
themselves mirror a usual deployment (a password is only good for binding).
``CONFIG_ADMIN_DN``, with the same password, may change cn=config.

``slapd_server`` starts one server per test session; ``ldap_target`` hands each test a
lockstep ``Target`` pointing at it and empties ``ou=people`` and ``ou=groups`` around the
test, re-seeding the groups the tests grant.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import ldap3
import pytest

from lockstep.connectors.ldap.directory import LdapSettings
from lockstep.model import Target
from lockstep.secret import Secret, generate_password
from services.process import (
    ServerProcess,
    ServerUnavailable,
    free_port,
    log_tail,
    start_or_unavailable,
    temp_dir,
)
from support.tls import TlsFiles

SUFFIX = "dc=example,dc=test"
ADMIN_DN = f"cn=admin,{SUFFIX}"
# Binds with the same password as ADMIN_DN; lets a test reconfigure the running server.
CONFIG_ADMIN_DN = "cn=admin,cn=config"
PEOPLE_DN = f"ou=people,{SUFFIX}"
GROUPS_DN = f"ou=groups,{SUFFIX}"
# Groups every test finds in place. Directories never hold an empty groupOfNames, so each is
# seeded with a member that is not a service account (the admin, outside ou=people).
SEEDED_GROUPS = ("readers", "writers", "auditors")

# Debian first; the others are where RPM-based distributions and source builds put them.
_MODULE_DIRS = (
    "/usr/lib/ldap",
    "/usr/lib64/openldap",
    "/usr/lib/openldap",
    "/usr/libexec/openldap",
)
_SCHEMA_DIRS = ("/etc/ldap/schema", "/etc/openldap/schema")
_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/local/libexec")


class SlapdUnavailable(ServerUnavailable):
    pass


@dataclass
class LocalSlapd(ServerProcess):
    """A running slapd. ``admin_password`` binds as ``admin_dn`` (the rootDN)."""

    url: str
    admin_dn: str
    admin_password: Secret
    base_dn: str
    people_dn: str
    groups_dn: str
    tls_url: str | None = None  # ldaps://, when started with TLS files

    name = "slapd"
    error = SlapdUnavailable

    def connect(self, bind_dn: str | None = None) -> ldap3.Connection:
        """An admin connection, for fixtures and for checking the directory behind a
        connector's back (or, as CONFIG_ADMIN_DN, for changing cn=config)."""
        server = ldap3.Server(self.url, get_info=ldap3.NONE, connect_timeout=5)
        password = self.admin_password.reveal()
        conn = ldap3.Connection(server, bind_dn or self.admin_dn, password, receive_timeout=5)
        if not conn.bind():
            raise SlapdUnavailable(f"admin bind failed: {conn.result['description']}")
        return conn

    def answers(self) -> bool:
        try:
            self.connect().unbind()
        except (ldap3.core.exceptions.LDAPException, SlapdUnavailable):
            return False
        return True


def _find(names: tuple[str, ...], where: tuple[str, ...], what: str) -> Path:
    for directory in where:
        if all((Path(directory) / name).exists() for name in names):
            return Path(directory)
    raise SlapdUnavailable(f"no {what} found in {', '.join(where)} (apt-get install slapd)")


def _executable(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(_SBIN_DIRS))
    if found is None:
        raise SlapdUnavailable(f"{name} not found (apt-get install slapd)")
    return found


def _ssha(password: str) -> str:
    """The rootPW hash, computed here so the password never appears on a command line."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()  # noqa: S324 - slapd's {SSHA}
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _config_ldif(
    directory: Path,
    modules: Path,
    schemas: Path,
    rootpw_hash: str,
    default_policy: bool,
    syncprov: bool,
    tls: TlsFiles | None = None,
) -> str:
    tls_lines = (
        f"olcTLSCACertificateFile: {tls.ca}\n"
        f"olcTLSCertificateFile: {tls.cert}\n"
        f"olcTLSCertificateKeyFile: {tls.key}\n"
        if tls is not None
        else ""
    )
    # Without a default policy, ppolicy still hashes passwords but enforces no lock.
    policy = f"olcPPolicyDefault: cn=default,ou=policies,{SUFFIX}\n" if default_policy else ""
    sync_module = "olcModuleLoad: syncprov\n" if syncprov else ""
    sync_overlay = (
        "\ndn: olcOverlay={1}syncprov,olcDatabase={1}mdb,cn=config\n"
        "objectClass: olcOverlayConfig\n"
        "objectClass: olcSyncProvConfig\n"
        "olcOverlay: {1}syncprov\n"
        if syncprov
        else ""
    )
    includes = "".join(
        f"include: file://{schemas}/{name}.ldif\n"
        for name in ("core", "cosine", "inetorgperson", "nis")
    )
    return f"""\
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {directory}/slapd.pid
olcArgsFile: {directory}/slapd.args
{tls_lines}
dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: {modules}
olcModuleLoad: back_mdb
olcModuleLoad: ppolicy
{sync_module}
dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

{includes}
dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcRootDN: {CONFIG_ADMIN_DN}
olcRootPW: {rootpw_hash}

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: {SUFFIX}
olcRootDN: {ADMIN_DN}
olcRootPW: {rootpw_hash}
olcDbDirectory: {directory}/db
olcDbMaxSize: 67108864
olcDbNoSync: TRUE
olcDbIndex: objectClass eq
olcDbIndex: uid,member eq
olcDbIndex: entryCSN eq
olcLastBind: TRUE
olcAccess: {{0}}to attrs=userPassword by self write by anonymous auth by * none
olcAccess: {{1}}to * by self read by users read by * none

dn: olcOverlay={{0}}ppolicy,olcDatabase={{1}}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcPPolicyConfig
olcOverlay: {{0}}ppolicy
{policy}olcPPolicyHashCleartext: TRUE
olcPPolicyUseLockout: TRUE
{sync_overlay}"""


_BASE_LDIF = f"""\
dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
dc: example
o: lockstep tests

dn: {PEOPLE_DN}
objectClass: organizationalUnit
ou: people

dn: {GROUPS_DN}
objectClass: organizationalUnit
ou: groups

dn: ou=policies,{SUFFIX}
objectClass: organizationalUnit
ou: policies

dn: cn=default,ou=policies,{SUFFIX}
objectClass: organizationalRole
objectClass: pwdPolicy
cn: default
pwdAttribute: userPassword
pwdLockout: TRUE
pwdMaxFailure: 0
pwdAllowUserChange: TRUE
"""


def _slapadd(slapadd: str, directory: Path, database: str, ldif: str) -> None:
    source = directory / f"db{database}.ldif"
    source.write_text(ldif)
    log = directory / "slapadd.log"
    with log.open("ab") as out:
        cmd = [slapadd, "-q", "-n", database, "-F", str(directory / "slapd.d"), "-l", str(source)]
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    if rc != 0:
        raise SlapdUnavailable(f"slapadd -n {database} failed (exit {rc}): {log_tail(log)}")


def start(
    *, default_policy: bool = True, syncprov: bool = True, tls: TlsFiles | None = None
) -> LocalSlapd:
    """Configure and start a slapd; returns once the admin can bind. ``default_policy=False``
    leaves entries without a password policy, as in a directory that never set one;
    ``syncprov=False`` leaves the suffix without ``contextCSN``, as in a directory that does
    not replicate."""
    slapd, slapadd = _executable("slapd"), _executable("slapadd")
    wanted = ("back_mdb.la", "ppolicy.la", *(("syncprov.la",) if syncprov else ()))
    modules = _find(wanted, _MODULE_DIRS, "slapd modules")
    schemas = _find(("core.ldif", "cosine.ldif"), _SCHEMA_DIRS, "LDAP schema")
    directory = temp_dir("slapd")
    try:
        password = _prepare(directory, slapadd, modules, schemas, default_policy, syncprov, tls)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    url = f"ldap://127.0.0.1:{free_port()}"
    tls_url = f"ldaps://127.0.0.1:{free_port()}" if tls is not None else None
    listen = f"{url}/" + (f" {tls_url}/" if tls_url else "")
    # -d 0 keeps slapd in the foreground, so the process we hold is the server itself.
    argv = [slapd, "-h", listen, "-F", str(directory / "slapd.d"), "-d", "0"]
    server = LocalSlapd(
        directory, argv, url, ADMIN_DN, password, SUFFIX, PEOPLE_DN, GROUPS_DN, tls_url
    )
    server.launch()
    return server


def _prepare(
    directory: Path,
    slapadd: str,
    modules: Path,
    schemas: Path,
    default_policy: bool,
    syncprov: bool,
    tls: TlsFiles | None = None,
) -> Secret:
    """Write the configuration and the base entries into ``directory``; the admin password."""
    (directory / "slapd.d").mkdir()
    (directory / "db").mkdir()
    password = generate_password()
    rootpw_hash = _ssha(password.reveal())
    config = _config_ldif(directory, modules, schemas, rootpw_hash, default_policy, syncprov, tls)
    _slapadd(slapadd, directory, "0", config)
    _slapadd(slapadd, directory, "1", _BASE_LDIF)
    return password


# ---------------------------------------------------------------- fixtures


@dataclass(frozen=True)
class LdapTarget:
    """What a connector test needs: the server (for checks behind the connector's back) and a
    lockstep target pointing at it, bound as the admin."""

    server: LocalSlapd
    target: Target

    def group_dn(self, cn: str) -> str:
        return f"cn={ldap3.utils.dn.escape_rdn(cn)},{self.server.groups_dn}"


def ldap_target_for(server: LocalSlapd, name: str = "directory") -> Target:
    return Target(
        name=name,
        type="ldap",
        environment="test",
        exclude=frozenset(),
        legacy=False,
        settings=LdapSettings.model_validate(
            {
                "url": server.url,
                "bind_dn": server.admin_dn,
                "bind_password": server.admin_password,
                "accounts_dn": server.people_dn,
                "groups_dn": server.groups_dn,
            }
        ),
    )


def _empty(conn: ldap3.Connection, base: str) -> None:
    """Delete everything below ``base``, deepest entries first."""
    conn.search(base, "(objectClass=*)", search_scope=ldap3.SUBTREE, attributes=[])
    below = [
        e["dn"] for e in conn.response or [] if e["type"] == "searchResEntry" and e["dn"] != base
    ]
    for dn in sorted(below, key=lambda dn: dn.count(","), reverse=True):
        if not conn.delete(dn):
            raise RuntimeError(f"cleanup could not delete {dn}: {conn.result['description']}")


def reset_directory(server: LocalSlapd) -> None:
    """Back to the fixture's baseline: no accounts, only the seeded groups."""
    conn = server.connect()
    try:
        _empty(conn, server.people_dn)
        _empty(conn, server.groups_dn)
        for cn in SEEDED_GROUPS:
            attributes = {"cn": cn, "member": [server.admin_dn]}
            if not conn.add(f"cn={cn},{server.groups_dn}", ["groupOfNames"], attributes):
                raise RuntimeError(f"could not seed group {cn}: {conn.result['description']}")
    finally:
        conn.unbind()


@contextmanager
def private_server(
    *, default_policy: bool = True, syncprov: bool = True, tls: TlsFiles | None = None
) -> Iterator[LocalSlapd]:
    """A server of one's own, at the baseline, for a test that stops or reconfigures it."""
    server = start_or_unavailable(
        lambda: start(default_policy=default_policy, syncprov=syncprov, tls=tls)
    )
    try:
        reset_directory(server)
        yield server
    finally:
        server.stop()


# Registered under the names tests ask for; the functions carry another name so that a test
# module can import them without its parameters shadowing the import.
@pytest.fixture(scope="session", name="slapd_server")
def slapd_server_fixture() -> Iterator[LocalSlapd]:
    with private_server() as server:
        yield server


@pytest.fixture(name="ldap_target")
def ldap_target_fixture(slapd_server: LocalSlapd) -> Iterator[LdapTarget]:
    reset_directory(slapd_server)
    yield LdapTarget(slapd_server, ldap_target_for(slapd_server))
    reset_directory(slapd_server)
