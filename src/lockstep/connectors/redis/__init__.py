"""The Redis connector: ACL users are accounts, ACL rule tokens are entitlements."""
