"""The narrated demo and the throw-away PostgreSQL it (and the test suite) runs on."""
