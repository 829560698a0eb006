"""Running the system: setting up a cluster and Kibana, Airflow standalone."""
