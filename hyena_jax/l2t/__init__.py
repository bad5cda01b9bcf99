"""L2T-Hyena: a Dynamic Loss Network sets the student's loss weight (issue 5; in progress)."""
