"""The CNAPS2 message layer: envelope, signatures, parsing, building and checking."""
