"""Security: CURVE keys and the ZAP authenticator, per-client permissions and rate limits,
and keeping secrets out of every output. See SECURITY.md for the threat model."""
