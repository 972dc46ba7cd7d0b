"""Build-time tools of the repository: the offline SAM transform and the IAM table."""
