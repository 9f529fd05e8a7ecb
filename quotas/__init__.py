"""Reference data (regions, provinces, communes, censuses) and yearly certificate quotas."""
