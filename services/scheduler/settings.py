from scriptbus.events.lifecycle import ServiceSettings


class SchedulerSettings(ServiceSettings):
    database_url: str = "postgresql://postgres@127.0.0.1:5432/scriptbus"
    # An executor silent for this long is declared lost and its unfinished runs end as `lost`.
    executor_lost_after_s: float = 10.0
    check_interval_s: float = 0.5
    # A schedule's tick this far behind the clock was missed (no scheduler ran): its `catch_up` decides.
    schedule_late_after_s: float = 30.0
