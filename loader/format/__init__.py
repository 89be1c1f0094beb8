"""The bundle format, defined once: file layout and path rules, manifest types and canonical encoding,
the DSSE envelope. The connected side imports it to write; the offline side to read and verify."""
