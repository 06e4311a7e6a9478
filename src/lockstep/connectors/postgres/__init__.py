"""The PostgreSQL connector: roles that can log in are accounts, everything else is granted."""
