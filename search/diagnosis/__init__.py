"""What a trial's learning curves say went wrong (or right), with evidence and advice."""
