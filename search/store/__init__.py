"""The study store: storage URL and engines, the epoch table, heartbeats, the reaper, the claim lock."""
