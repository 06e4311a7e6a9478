"""The OpenLDAP connector: entries under accounts_dn are accounts, groupOfNames memberships
are entitlements."""
