"""CNAPS2 message schemas (XSD) written for this product, and the catalogue of types."""

from message_schemas.catalogue import CATALOGUE, MessageType, by_namespace, get, schema

__all__ = ["CATALOGUE", "MessageType", "by_namespace", "get", "schema"]
