"""The vault keeps credentials encrypted at rest and keeps retired ones for verification."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from lockstep.credentials.vault import StoredCredential, Vault, VaultError
from lockstep.secret import Secret, generate_password
from lockstep.store import Store

pytest_plugins = ("support.stores",)

T0 = datetime(2026, 4, 1, 8, 30, tzinfo=UTC)


@pytest.fixture
def vault(store: Store) -> Vault:
    return Vault(store, Fernet.generate_key())


def put(vault: Vault, secret: Secret, at: datetime = T0, account: str = "payments_api") -> None:
    vault.put("orders-db", account, "payments-api", account, secret, at, at + timedelta(days=30))


def ciphertexts(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return list(conn.execute(text("SELECT ciphertext FROM credentials")).scalars())


def test_a_stored_credential_reads_back_whole(vault: Vault) -> None:
    secret = generate_password()
    stored = vault.put("orders-db", "payments_api", "payments-api", "payments_api", secret, T0)
    assert vault.current("orders-db", "payments_api") == stored
    assert stored == StoredCredential(
        "orders-db", "payments_api", "payments-api", "payments_api", secret,
        secret.fingerprint(), T0, None,
    )  # fmt: skip


def test_an_account_with_no_credential_has_none(vault: Vault) -> None:
    assert vault.current("orders-db", "nobody") is None
    assert vault.retired("orders-db", "nobody") == []


def test_the_secret_is_never_stored_in_clear(vault: Vault, store: Store, state_url: str) -> None:
    secret = generate_password()
    put(vault, secret)
    stored = ciphertexts(store)
    assert len(stored) == 1 and secret.reveal() not in stored[0]
    if store.dialect == "sqlite":
        store.close()  # checkpoints the WAL into the main file
        state_dir = Path(state_url.removeprefix("sqlite:///")).parent
        for file in state_dir.iterdir():
            assert secret.reveal().encode() not in file.read_bytes(), file


def test_rotating_retires_the_previous_credential_newest_first(vault: Vault) -> None:
    old, middle, new = generate_password(), generate_password(), generate_password()
    for i, secret in enumerate((old, middle, new)):
        put(vault, secret, T0 + timedelta(days=i))
    current = vault.current("orders-db", "payments_api")
    assert current is not None and current.secret == new
    assert [c.secret for c in vault.retired("orders-db", "payments_api")] == [middle, old]


def test_rotating_one_account_leaves_the_others_alone(vault: Vault) -> None:
    a, b, a2 = generate_password(), generate_password(), generate_password()
    put(vault, a, account="a")
    put(vault, b, account="b")
    put(vault, a2, account="a")
    current_b = vault.current("orders-db", "b")
    assert current_b is not None and current_b.secret == b
    assert vault.retired("orders-db", "b") == []


def test_concurrent_rotations_leave_exactly_one_current_credential(vault: Vault) -> None:
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker() -> None:
        start.wait()
        try:
            for _ in range(10):
                put(vault, generate_password())
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread's assert
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert vault.current("orders-db", "payments_api") is not None
    assert len(vault.retired("orders-db", "payments_api")) == 39


@pytest.mark.parametrize(("keep", "left"), [(0, 0), (1, 1), (2, 2), (5, 3)])
def test_purging_keeps_the_newest_retired_credentials(vault: Vault, keep: int, left: int) -> None:
    secrets = [generate_password() for _ in range(4)]
    for i, secret in enumerate(secrets):
        put(vault, secret, T0 + timedelta(hours=i))
    purged = vault.purge_retired("orders-db", "payments_api", keep=keep)
    assert purged == 3 - left
    retired = vault.retired("orders-db", "payments_api")
    assert [c.secret for c in retired] == [secrets[2], secrets[1], secrets[0]][:left]
    current = vault.current("orders-db", "payments_api")
    assert current is not None and current.secret == secrets[3]


def test_reading_with_another_key_is_a_vault_error_naming_lockstep_key(
    vault: Vault, store: Store
) -> None:
    secret = generate_password()
    put(vault, secret)
    with pytest.raises(VaultError, match="LOCKSTEP_KEY does not match") as caught:
        Vault(store, Fernet.generate_key()).current("orders-db", "payments_api")
    assert secret.reveal() not in str(caught.value)


def test_a_ciphertext_moved_to_another_account_is_refused(vault: Vault, store: Store) -> None:
    put(vault, generate_password(), account="a")
    put(vault, generate_password(), account="b")
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE credentials SET ciphertext ="
                " (SELECT ciphertext FROM credentials WHERE account = 'a') WHERE account = 'b'"
            )
        )
    with pytest.raises(VaultError, match="encrypted for another account"):
        vault.current("orders-db", "b")


def test_a_malformed_key_is_refused(store: Store) -> None:
    with pytest.raises(VaultError, match="not a valid Fernet key"):
        Vault(store, b"too-short")


def test_issue_times_of_current_credentials_come_in_one_read(vault: Vault) -> None:
    vault.put("db", "a", "api", "a", generate_password(), T0)
    vault.put("db", "a", "api", "a", generate_password(), T0 + timedelta(days=1))
    vault.put("db", "b", None, "b", generate_password(), T0)
    assert vault.issued_times() == {("db", "a"): T0 + timedelta(days=1), ("db", "b"): T0}
