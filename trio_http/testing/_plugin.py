"""The pytest plugin (entry point ``pytest11``). Importing it must stay cheap."""
