package main

import (
	"fmt"
	"math"
	"sort"
	"time"

	"k8s.io/autoscaler/vertical-pod-autoscaler/pkg/recommender/model"
)

// event is one sample row (a CPU and a memory sample of one container at one time) or one
// OOM kill, with amounts converted as upstream's Prometheus history provider converts floats
// (model.CPUAmountFromCores, model.MemoryAmountFromBytes: truncation to millicores / bytes).
type event struct {
	isOOM     bool
	container model.ContainerID
	t         time.Time
	cpu       model.ResourceAmount
	memory    model.ResourceAmount
}

type oomKey struct {
	pod, container string
	t              time.Time
}

// orderEvents validates a case and puts its events in replay order.
//
// Sample rows are replayed in the order given: upstream ingests samples as they arrive and
// itself drops a container's CPU sample that is not newer than its previous one and a memory
// sample older than its previous one, so a stream out of order is fed to it out of order.
//
// An OOM kill is a flag on a trace row: it is recorded right after the sample row of the same
// container at the same time (that row's usage is already in the container's memory peak, as
// the kill was observed after the metrics that preceded it). A kill without such a row is
// recorded in time order, before the first sample row later than it; kills left after the
// last row come last.
func orderEvents(c caseInput) ([]event, error) {
	containers := map[string]bool{}
	for _, name := range c.Containers {
		if name == "" || containers[name] {
			return nil, fmt.Errorf("containers: empty or repeated name %q", name)
		}
		containers[name] = true
	}
	check := func(what string, i int, pod, container string, t float64) (model.ContainerID, time.Time, error) {
		id := model.ContainerID{PodID: model.PodID{Namespace: namespace, PodName: pod}, ContainerName: container}
		if pod == "" {
			return id, time.Time{}, fmt.Errorf("%s %d: empty pod", what, i)
		}
		if !containers[container] {
			return id, time.Time{}, fmt.Errorf("%s %d: container %q is not in containers %v", what, i, container, c.Containers)
		}
		at, ok := unixTime(t)
		if !ok {
			return id, time.Time{}, fmt.Errorf("%s %d: time %v out of range", what, i, t)
		}
		return id, at, nil
	}

	ooms := make([]event, len(c.OOMs))
	byRow := map[oomKey][]int{}
	for i, o := range c.OOMs {
		id, t, err := check("oom", i, o.Pod, o.Container, o.T)
		if err != nil {
			return nil, err
		}
		if !finite(o.Memory) {
			return nil, fmt.Errorf("oom %d: memory %v is not finite", i, o.Memory)
		}
		ooms[i] = event{isOOM: true, container: id, t: t, memory: model.MemoryAmountFromBytes(o.Memory)}
	}
	sort.SliceStable(ooms, func(i, j int) bool { return ooms[i].t.Before(ooms[j].t) })
	for i, o := range ooms {
		key := oomKey{o.container.PodName, o.container.ContainerName, o.t}
		byRow[key] = append(byRow[key], i)
	}

	events := make([]event, 0, len(c.Samples)+len(ooms))
	done := make([]bool, len(ooms))
	next := 0 // first OOM not yet known to be recorded, in time order
	for i, s := range c.Samples {
		id, t, err := check("sample", i, s.Pod, s.Container, s.T)
		if err != nil {
			return nil, err
		}
		if !finite(s.CPU) || !finite(s.Memory) {
			return nil, fmt.Errorf("sample %d: cpu %v or memory %v is not finite", i, s.CPU, s.Memory)
		}
		for ; next < len(ooms) && (done[next] || ooms[next].t.Before(t)); next++ {
			if !done[next] {
				done[next] = true
				events = append(events, ooms[next])
			}
		}
		events = append(events, event{
			container: id, t: t,
			cpu:    model.CPUAmountFromCores(s.CPU),
			memory: model.MemoryAmountFromBytes(s.Memory),
		})
		for _, k := range byRow[oomKey{s.Pod, s.Container, t}] {
			if !done[k] {
				done[k] = true
				events = append(events, ooms[k])
			}
		}
	}
	for k := range ooms {
		if !done[k] {
			events = append(events, ooms[k])
		}
	}
	return events, nil
}

func finite(x float64) bool {
	return !math.IsNaN(x) && !math.IsInf(x, 0)
}
