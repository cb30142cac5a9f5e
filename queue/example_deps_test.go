package queue_test

import (
	"context"
	"fmt"
	"log"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
)

// ResizeImage makes the small version of one image of an album.
type ResizeImage struct {
	AlbumID int64  `json:"album_id"`
	Image   string `json:"image"`
}

func (t *ResizeImage) Handle(ctx context.Context) (string, error) { return "small-" + t.Image, nil }

// BuildAlbum puts the resized images of an album together.
type BuildAlbum struct {
	AlbumID int64 `json:"album_id"`
}

func (t *BuildAlbum) Handle(ctx context.Context) (string, error) { return "album ready", nil }

// Fan out, fan in: one job per image, resized in parallel by any number of
// workers, and the album built once all of them have completed. The album
// waits in the state pending; if a resize fails for good, the album is
// cancelled (queue.DepCancel, the default policy).
//
// Its state in SQL:
//
//	SELECT state, count(*) FROM tasq_jobs WHERE kind = 'ResizeImage' GROUP BY 1;
//	SELECT state, cardinality(deps_waiting) AS waiting_for FROM tasq_jobs WHERE id = $album;
func ExampleAfter() {
	ctx := context.Background()
	var client *queue.Client // from queue.NewClient(postgresAdapter)
	images := []string{"beach.jpg", "dunes.jpg", "sunset.jpg"}
	resizes := make([]any, len(images))
	for i, img := range images {
		resizes[i] = &ResizeImage{AlbumID: 7, Image: img}
	}
	ids, err := client.DispatchMany(ctx, resizes)
	if err != nil {
		log.Fatal(err)
	}
	album, err := client.Dispatch(ctx, &BuildAlbum{AlbumID: 7}, queue.After(ids...))
	if err != nil {
		log.Fatal(err)
	}
	res, err := queue.WaitResult[string](ctx, client, album)
	fmt.Println(res, err) // album ready <nil>
}

// DepRun runs the job once its dependencies have finished, whatever became
// of them: a clean-up that must run after every import, whether it worked
// or not.
func ExampleAfterPolicy() {
	ctx := context.Background()
	var client *queue.Client
	var imports []uuid.UUID // the IDs of the import jobs
	id, err := client.Dispatch(ctx, &SendNotification{Message: "imports done"},
		queue.After(imports...), queue.AfterPolicy(queue.DepRun))
	fmt.Println(id, err)
}
