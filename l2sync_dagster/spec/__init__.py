"""Connection files: YAML schema, connection strings and secret references."""
