"""Small programs the tests run as separate worker processes."""
