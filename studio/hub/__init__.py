"""Model hub access: downloads the user asked for (Hugging Face, ModelScope), resumable and verified.

studio.hub.download has the API: DownloadRequest, JobState, Downloads, and is_complete / partial_state
(whether a folder's download finished and was verified; the finder offers only complete folders)."""
