"""The websocket client: Client, Sync, RemoteDatabase."""
