"""Scheduler jobs. Service code reads the job type constants from here::

    from scheduling import SCHEDULER

    self.invoke("zato.scheduler.job.create", {"job_type": SCHEDULER.JOB_TYPE.INTERVAL_BASED, ...})
"""


class SCHEDULER:
    class JOB_TYPE:
        ONE_TIME = "one_time"
        INTERVAL_BASED = "interval_based"
        CRON_STYLE = "cron_style"
