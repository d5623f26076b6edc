{{/*
The alert rule groups, shared by the PrometheusRule (prometheusrule.yaml) and the plain
rules file monitoring/joulie-tasks.rules.yaml (rendered from this template with the
default values; a test keeps the two identical). Every alert has a summary, a
description and a runbook section in docs/OPERATIONS.md (anchor = alert name).
*/}}
{{- define "joulie-tasks.alertGroups" -}}
{{- $a := .Values.alerts }}
{{- $job := include "joulie-tasks.metricsJob" . }}
{{- $runbook := .Values.alerts.runbookUrl }}
groups:
  - name: joulie-tasks
    rules:
      - alert: JoulieNoSuccessfulTick
        expr: >-
          time() - joulie_last_tick_timestamp_seconds
          > {{ $a.noSuccessfulTick.intervals }} * joulie_reconcile_interval_seconds
        for: {{ $a.noSuccessfulTick.for }}
        labels:
          {{- toYaml $a.labels | nindent 10 }}
        annotations:
          summary: No successful joulie-tasks tick for {{ $a.noSuccessfulTick.intervals }} intervals.
          description: >-
            The last tick that completed ran {{`{{ $value | humanizeDuration }}`}} ago
            (job {{`{{ $labels.job }}`}}); node profiles are not being reconciled.
          runbook_url: {{ $runbook }}#joulienosuccessfultick
      - alert: JoulieTicksFailing
        expr: >-
          sum without (result) (increase(joulie_ticks_total{result="failed"}[{{ $a.ticksFailing.window }}]))
          / sum without (result) (increase(joulie_ticks_total{result=~"completed|failed_writes|failed"}[{{ $a.ticksFailing.window }}]))
          > {{ $a.ticksFailing.ratio }}
        for: {{ $a.ticksFailing.for }}
        labels:
          {{- toYaml $a.labels | nindent 10 }}
        annotations:
          summary: joulie-tasks ticks are failing.
          description: >-
            {{`{{ $value | humanizePercentage }}`}} of the ticks of the last
            {{ $a.ticksFailing.window }} failed (job {{`{{ $labels.job }}`}}).
          runbook_url: {{ $runbook }}#joulieticksfailing
      - alert: JoulieWritesFailing
        expr: >-
          increase(joulie_write_failures_total[{{ $a.writesFailing.window }}]) > {{ $a.writesFailing.threshold }}
        for: {{ $a.writesFailing.for }}
        labels:
          {{- toYaml $a.labels | nindent 10 }}
        annotations:
          summary: joulie-tasks node writes keep failing.
          description: >-
            {{`{{ $value | humanize }}`}} node writes failed after retries in the last
            {{ $a.writesFailing.window }} (job {{`{{ $labels.job }}`}}).
          runbook_url: {{ $runbook }}#jouliewritesfailing
      - alert: JoulieNodeDrainingTooLong
        expr: >-
          joulie_operator_node_state{state="DrainingPerformance"} == 1
        for: {{ $a.draining.for }}
        labels:
          {{- toYaml $a.labels | nindent 10 }}
        annotations:
          summary: Node {{`{{ $labels.node }}`}} has been draining for more than {{ $a.draining.for }}.
          description: >-
            Node {{`{{ $labels.node }}`}} is planned eco but still runs performance-only
            pods, so its downgrade has waited for more than {{ $a.draining.for }}.
          runbook_url: {{ $runbook }}#joulienodedrainingtoolong
      - alert: JoulieLockFlapping
        expr: >-
          increase(joulie_leader_changes_total[{{ $a.leaderChanges.windowSeconds }}s])
          > {{ $a.leaderChanges.factor }} * ({{ $a.leaderChanges.windowSeconds }} / joulie_reconcile_interval_seconds)
        for: {{ $a.leaderChanges.for }}
        labels:
          {{- toYaml $a.labels | nindent 10 }}
        annotations:
          summary: The joulie-tasks tick lock changes holder more often than ticks are scheduled.
          description: >-
            The lock changed holder {{`{{ $value | humanize }}`}} times in
            {{ $a.leaderChanges.windowSeconds }}s, more than the ticks beat schedules in that
            time (job {{`{{ $labels.job }}`}}): another tick source shares this Redis.
          runbook_url: {{ $runbook }}#joulielockflapping
      - alert: JouliePausedTooLong
        expr: >-
          joulie_paused == 1
        for: {{ $a.paused.for }}
        labels:
          {{- toYaml $a.labels | nindent 10 }}
        annotations:
          summary: joulie-tasks has been paused for more than {{ $a.paused.for }}.
          description: >-
            The operator is paused (joulie-tasks pause) and writes nothing; run
            joulie-tasks resume when the maintenance is over (job {{`{{ $labels.job }}`}}).
          runbook_url: {{ $runbook }}#jouliepausedtoolong
      - alert: JoulieMetricsDown
        expr: >-
          up{job="{{ $job }}"} == 0 or absent(up{job="{{ $job }}"})
        for: {{ $a.metricsDown.for }}
        labels:
          {{- toYaml $a.labels | nindent 10 }}
        annotations:
          summary: The joulie-tasks metrics endpoint is down.
          description: >-
            Prometheus cannot scrape job {{ $job }} (or has no such target); every
            other joulie-tasks alert is blind.
          runbook_url: {{ $runbook }}#jouliemetricsdown
      - alert: JoulieRedisUnreachable
        expr: >-
          joulie_redis_up == 0
        for: {{ $a.redisDown.for }}
        labels:
          {{- toYaml $a.labels | nindent 10 }}
        annotations:
          summary: The joulie-tasks metrics process cannot read Redis.
          description: >-
            joulie_redis_up is 0 (job {{`{{ $labels.job }}`}}): Redis, the broker and
            state store of every tick, does not answer the metrics process.
          runbook_url: {{ $runbook }}#joulieredisunreachable
{{- end }}
