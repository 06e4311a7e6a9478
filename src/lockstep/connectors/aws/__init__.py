"""The AWS IAM connector: users and roles are accounts, managed policies and groups are
entitlements."""
