"""YouTube playlist downloads with yt-dlp into per-user folders, then Plex: scan and collection."""
